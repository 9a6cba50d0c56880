"""newswatch: watch news feeds for what matters and alert the right people, once, with the reason."""

__version__ = "0.1.0"
