"""Helpers of the test suite (and of bench/, which shares the SMTP sink and the process
runner). conftest.py declares fixtures only; tests import helpers from here."""
