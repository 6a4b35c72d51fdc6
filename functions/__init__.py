"""Thin trigger adapters: parse the trigger, call the service layer, answer."""
