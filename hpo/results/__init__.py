"""What a study shows: the report, insights, the live view, export, plots and the dashboard."""
