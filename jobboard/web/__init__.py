"""The web app for people: server-rendered page shells whose ES modules call the JSON API."""
