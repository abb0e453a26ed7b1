"""The error a tool call ends with: one line, what the model is told."""

from __future__ import annotations

from secretaries_core.errors import SecretariesError


class ToolError(SecretariesError):
    """A tool call failed (timeout, HTTP status, MCP error, unreachable); one line."""
