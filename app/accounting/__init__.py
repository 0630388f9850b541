"""Accounting core: pure functions from interval energies to carbon and green-electricity figures."""
