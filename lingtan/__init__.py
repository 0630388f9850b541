"""Lingtan's command line: the one place that assembles the service from its domain packages."""
