"""The report page: tables of jobs.score and jobs.extract read into typed records (timeline_data,
report_sources) and drawn as one self-contained HTML file (html_report)."""
