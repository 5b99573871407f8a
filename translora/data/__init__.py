"""Task sources, splits and prompt formats."""

from translora.data.records import Example, TaskCard, TaskData
from translora.data.sources import Checker, checker_for, load_task

__all__ = ["Checker", "Example", "TaskCard", "TaskData", "checker_for", "load_task"]
