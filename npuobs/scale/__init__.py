"""Fleet scale: synthetic nodes replaying real exporter output, and the global tier run at fleet size."""
