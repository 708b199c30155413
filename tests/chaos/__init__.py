"""The fault suite's short form (`loadtests/chaos`)."""
