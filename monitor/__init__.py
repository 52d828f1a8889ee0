"""Signal processing, detection and monitoring."""
