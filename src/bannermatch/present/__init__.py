"""Showing results: the HTML report (Jinja2 templates), the similarity map, and the web
server (JSON API, the page and the original tools' routes)."""
