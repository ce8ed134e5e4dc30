"""`python -m bot.config` prints the README's settings table."""

from bot.config.reference import render_settings_table

print(render_settings_table())
