"""Face detection: MTCNN's three-stage cascade on the job's runtime, and the crops and 5-point alignment of faces."""
