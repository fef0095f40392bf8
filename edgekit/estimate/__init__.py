"""Estimates for real boards from emulated runs: roofline bounds and a calibrated latency cost model.

Everything here is labelled: a roofline is a lower bound from published specifications; an estimate is an
estimate with its calibration error. Neither is a measured latency, and neither is ever stored as one.
"""
