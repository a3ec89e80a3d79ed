"""Pictures of money over time: equity curves as PNG (matplotlib, for chat) and as inline SVG (for the page)."""
