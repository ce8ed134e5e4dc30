"""The Discord adapter's helpers (`bot.discord_adapter` is the entry point): the `/memory` admin
commands, rendering of admin values, attachments into archival, edits and deletes before a turn, and
the switch that points discord.py at another API base."""
