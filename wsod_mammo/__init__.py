"""wsod-mammo: weakly supervised mass detection in mammograms with GMIC and pluggable saliency methods."""

__version__ = "0.1.0"
