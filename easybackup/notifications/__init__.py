"""Notifications: Slack's Web API over raw HTTP (`slack_api.SlackApi`). A notification problem never changes a
backup's result."""
