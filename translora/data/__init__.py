"""Task sources, splits and prompt formats."""

from translora.data.records import Example, TaskCard, TaskData
from translora.data.sources import load_task

__all__ = ["Example", "TaskCard", "TaskData", "load_task"]
