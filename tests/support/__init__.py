"""Helpers shared by the HTTP and end-to-end tests: real server processes and event builders."""
