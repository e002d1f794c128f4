"""nst_core: Gatys et al. neural style transfer on VGG19, as a library, a CLI and a GIMP worker."""

__version__ = "0.1.0"
