"""Hatch build hook: compile the optional C accelerators (never fails the build)."""

from __future__ import annotations

import importlib.util
import os

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SpeedupsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        # load the builder by path: the package itself is not importable during a build
        path = os.path.join(self.root, "ctools", "_speedups", "__init__.py")
        spec = importlib.util.spec_from_file_location("_ctools_speedups_build", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            built = module.build(quiet=True)
        except Exception as exc:  # no compiler or headers: the pure-Python path is used
            self.app.display_warning(f"ctools: C accelerator not built ({exc}); "
                                     "using the pure-Python path")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for out in built:
            # *.so are git-ignored: list them as artifacts so regular wheels carry them
            build_data["artifacts"].append(os.path.relpath(out, self.root))
