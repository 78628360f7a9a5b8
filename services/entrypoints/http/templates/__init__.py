"""Jinja2 templates of the dashboard (services/entrypoints/http/dashboard.py). A package only so that setuptools ships the *.html
files with it (package-data "*.html")."""
