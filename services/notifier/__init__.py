"""The notifier service: routes matches to subscriptions and delivers each alert once."""
