"""Prediction heads on the aggregated tokens: cameras (`camera_head`), dense maps (`dpt_head`)."""
