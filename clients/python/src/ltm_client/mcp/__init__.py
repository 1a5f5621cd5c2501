"""LTM's tools for a local MCP client (stdio), acting through the SDK:
`ltm-mcp`, installed with `pip install 'ltm-client[mcp]'`."""
