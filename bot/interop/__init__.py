"""Membot agents inside other agent frameworks and protocols.

- `a2a`: the A2A server (`membot serve a2a`, or beside the platforms in `membot run`), with
  `a2a_input`, `a2a_replies` and `a2a_executor` beside it; extra `membot[a2a]`.
- `agent_framework`: `MembotAgent` for Microsoft Agent Framework; extra `membot[agent-framework]`.
- `autogen`: `MembotChatAgent` for autogen-agentchat 0.7; extra `membot[autogen]`.
- `group_turns`: what the two in-process integrations share: new messages from several
  speakers in, recorded once each, one turn, one reply out.

Each framework's SDK is imported only by its own module here, so the rest of membot never
needs the extras installed.
"""
