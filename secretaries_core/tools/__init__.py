"""Tools a secretary can call: HTTP functions and MCP servers, registered by name.

`spec.py` what a tool is (and its JSON document), `table.py` where tools are stored,
`registry.py` add/list/show/remove, `http_tool.py` and `mcp_tool.py` the two kinds,
`calling.py` one call of any kind (timeout, result size, secrets scrubbed).
"""
