"""The Model Context Protocol server: tools and resources for agents and IDEs (docs/mcp.md)."""
