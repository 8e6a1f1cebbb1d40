"""SolarNexus Calendar Sync core: domain rules, Cronofy client and storage, shipped as a Lambda layer.

Handlers import what they need from here; nothing in this package imports a handler.
"""
