"""The matcher service: tests every item against the watch topics and publishes matches with the reason."""
