"""DeSa2VA: decoupled [SEG] tokens for grounded image and video understanding."""
__version__ = "0.1.0"
