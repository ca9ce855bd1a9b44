"""Generated demo data: textured surfaces (machined metal, tile, fabric, cast) with
scratches, pits, cracks and stains, their masks, and the demo project built from them."""

from defect_studio.demo.generator import (
    DEMO_DEFAULTS,
    DemoImage,
    DemoSettingsError,
    default_demo_dir,
    generate_demo_images,
    generate_demo_project,
    load_recipe,
    render_demo_image,
)

__all__ = [
    "DEMO_DEFAULTS",
    "DemoImage",
    "DemoSettingsError",
    "default_demo_dir",
    "generate_demo_images",
    "generate_demo_project",
    "load_recipe",
    "render_demo_image",
]
