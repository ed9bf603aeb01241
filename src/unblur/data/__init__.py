"""Datasets: synthetic pairs made on the fly from folders of sharp photos."""
