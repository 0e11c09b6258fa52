"""Primitives below the model: the tone curve, streaming passes over a data set, one-pass moments
and rank statistics. Nothing here knows the network; every module above may use them.
"""
