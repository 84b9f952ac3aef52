"""The report query audit: every report asked for, by whom, with which parameters."""
