"""Simulated instruments for the demo and the test suite.

``scenario`` generates the process (values, garbage on the line, unplug/replug) shared by every simulator;
``pty`` serves a serial protocol on a pseudo-terminal, exactly as the instrument would on a USB adapter.
"""
