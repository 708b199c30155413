"""The load-test scenarios run briefly against real servers, for behaviour, not speed."""
