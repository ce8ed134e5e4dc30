"""How the Discord admin commands show what `AdminService` returns: Discord Markdown, within 2,000 characters.

Pure functions of the service's values (no discord.py here), so the `/memory` commands in
`bot.discord.commands` stay parse, check, call, format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.admin import ForgetReport, MemorySummary, ResetReport, UsageReport
from bot.memory.policy_store import AuditEntry

__all__ = [
    "MESSAGE_LIMIT",
    "agent_markdown",
    "audit_lines",
    "forget_text",
    "reset_text",
    "summary_text",
    "usage_text",
]

MESSAGE_LIMIT = 2000
_ELLIPSIS = "…"


def summary_text(summary: MemorySummary) -> str:
    """`/memory show`: who the agent is, its counts, then each core block (cut to fit one message)."""
    state = "paused" if summary.is_paused else "active"
    head = [
        f"**Agent** `{summary.agent_id}` ({state}) for `{summary.conversation_key or summary.name}`",
        f"Recall: {summary.recall_count} messages · archival: {summary.archival_count} passages",
    ]
    if summary.summary:
        head.append(f"Summary: {_cut(summary.summary, 300)}")
    text = "\n".join(head)
    blocks = summary.blocks
    room = MESSAGE_LIMIT - len(text) - 10
    each = max(40, room // max(len(blocks), 1) - 40)
    for block in blocks:
        value = _cut(block.value, each).replace("```", "'''")
        text += f"\n**{block.label}** ({block.size}/{block.limit})\n```\n{value}\n```"
    return _cut(text, MESSAGE_LIMIT)


def reset_text(report: ResetReport) -> str:
    match report.scope:
        case "all":
            return f"Agent `{report.agent_id}` is deleted; the next message here starts a new one."
        case "core":
            return f"Core memory of `{report.agent_id}` is back to its templates ({report.blocks_reset} blocks)."
        case "recall":
            return f"Recall of `{report.agent_id}` is empty ({report.messages_deleted} messages deleted)."
        case "archival":
            return f"Archival memory of `{report.agent_id}` is empty ({report.passages_deleted} passages deleted)."


def forget_text(report: ForgetReport) -> str:
    text = (
        f"Forgot <@{report.user_id}>: {len(report.agents_deleted)} of their own agents deleted, "
        f"{report.shared_messages_deleted} of their messages removed from {len(report.shared_agents_cleaned)} shared agents."
    )
    if not report.is_complete:
        text += f" {report.shared_messages_kept} messages could not be removed."
    return text


def usage_text(report: UsageReport) -> str:
    """`/memory usage`: totals, today's budget, then one line per day."""
    total = report.total_prompt_tokens + report.total_completion_tokens
    lines = [
        f"**Tokens {report.since} to {report.until}**: {total:,} ({report.total_prompt_tokens:,} prompt, "
        f"{report.total_completion_tokens:,} completion) in {report.total_calls:,} calls"
    ]
    budget = report.server_budget
    if budget is not None and budget.limit:
        lines.append(f"Today's server budget: {budget.spent:,} of {budget.limit:,} tokens")
    for row in report.rows:
        lines.append(f"{row.day}: {row.total_tokens:,} tokens, {row.calls:,} calls")
    return _cut("\n".join(lines), MESSAGE_LIMIT)


def audit_lines(entries: Sequence[AuditEntry]) -> str:
    """`/memory audit`: newest first, one line each."""
    if not entries:
        return "No admin actions recorded on this server yet."
    lines = []
    for entry in entries:
        what = entry.action + (f" `{entry.agent_id}`" if entry.agent_id else "")
        detail = f" ({_cut(entry.detail, 80)})" if entry.detail else ""
        lines.append(f"<t:{int(entry.at.timestamp())}:f> **{entry.actor_name}**: {what}{detail}")
    text = ""
    for line in lines:
        if len(text) + len(line) + 1 > MESSAGE_LIMIT:
            break
        text += line + "\n"
    return text.rstrip()


def agent_markdown(exported: Mapping[str, Any]) -> str:
    """A readable copy of `AgentDirectory.export` (the JSON file beside it is the exact one)."""
    agent = exported.get("agent") or {}
    out = [f"# Agent {agent.get('name', '?')}", "", f"- id: `{agent.get('id', '?')}`"]
    out += [f"- exported: {exported.get('exported_at', '?')}", ""]
    if agent.get("summary"):
        out += ["## Summary", "", str(agent["summary"]), ""]
    out += ["## Core memory", ""]
    for block in exported.get("core_memory") or []:
        out += [f"### {block.get('label')}", "", str(block.get("value", "")), ""]
    messages = exported.get("messages") or []
    out += [f"## Recall ({len(messages)} messages)", ""]
    for message in messages:
        speaker = message.get("speaker_name") or message.get("role")
        content = str(message.get("content") or "").replace("\n", "\n  ")
        out.append(f"- {message.get('created_at', '')} **{speaker}** ({message.get('role')}): {content}")
    passages = exported.get("passages") or []
    out += ["", f"## Archival ({len(passages)} passages)", ""]
    out += [f"- {str(p.get('text', '')).replace(chr(10), chr(10) + '  ')}" for p in passages]
    return "\n".join(out) + "\n"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + _ELLIPSIS
