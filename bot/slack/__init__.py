"""The Slack adapter's helpers (`bot.slack_adapter` is the entry point): the `/membot` admin command
and its confirmations, replies in threads, people's names, Markdown to mrkdwn, and the Web API client."""
