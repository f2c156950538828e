"""VTK pipelines (no Qt): slice views, the 3D view, offscreen snapshots.

Importing the package registers VTK's OpenGL and text back-ends once for every pipeline.
"""

import vtkmodules.vtkInteractionStyle
import vtkmodules.vtkRenderingFreeType
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (OpenGL back-end)
