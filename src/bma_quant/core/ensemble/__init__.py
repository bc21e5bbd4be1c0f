"""Combining the base models: stacking, regime weights, pseudo-BMA, equal and IC weights."""
