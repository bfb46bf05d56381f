"""Sources and sinks: files and databases today (streams later), read into Arrow/Polars."""
