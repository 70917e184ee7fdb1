"""The app's file dialogs, one way for every open, save and folder question.

Qt's own dialog (what Qt uses where the desktop offers none, as under X without a desktop
environment) opens at about 630x410 pixels, which cuts the file list's size, type and date
columns to ellipses. Ours opens large enough to read them, sizes those columns to what they
show once the folder has been read, and starts in the folder the last dialog ended in."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication, QFileDialog, QFileSystemModel, QSplitter, QTreeView, QWidget

DIALOG_SIZE = QSize(960, 600)
SIDEBAR_PX = 140
SCREEN_SHARE = 0.9  # of the available screen, at most
_last_folder = ""  # where the last dialog ended, for the next one to start in (this session)


def build(
    parent: QWidget | None, title: str, mode: QFileDialog.FileMode, name_filter: str = "", default_name: str = "", save: bool = False
) -> QFileDialog:
    """A file dialog, not yet shown: `mode` as QFileDialog's, `save` for a Save button."""
    dialog = QFileDialog(parent, title, _last_folder, name_filter)
    dialog.setFileMode(mode)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen)
    if mode == QFileDialog.FileMode.Directory:
        dialog.setOption(QFileDialog.Option.ShowDirsOnly)
    if default_name:
        dialog.selectFile(default_name)
    screen = (parent.screen() if parent is not None else QApplication.primaryScreen()).availableSize()
    dialog.resize(
        min(DIALOG_SIZE.width(), int(screen.width() * SCREEN_SHARE)), min(DIALOG_SIZE.height(), int(screen.height() * SCREEN_SHARE))
    )
    model = dialog.findChild(QFileSystemModel)
    if model is not None:  # Qt's own dialog: its columns follow the folder shown
        model.directoryLoaded.connect(lambda _folder: fit_columns(dialog))
    return dialog


def fit_columns(dialog: QFileDialog) -> None:
    """Size, type and date as wide as their entries; the name takes what is left (and the
    places on the left are wide enough to read "Computer")."""
    tree, splitter = dialog.findChild(QTreeView), dialog.findChild(QSplitter)
    if tree is None:
        return
    if splitter is not None and splitter.count() == 2 and splitter.sizes()[0] < SIDEBAR_PX:
        splitter.setSizes([SIDEBAR_PX, sum(splitter.sizes()) - SIDEBAR_PX])
    for column in range(1, tree.header().count()):
        tree.resizeColumnToContents(column)
    rest = sum(tree.header().sectionSize(c) for c in range(1, tree.header().count()))
    tree.header().resizeSection(0, max(tree.sizeHintForColumn(0), tree.viewport().width() - rest))


def _run(dialog: QFileDialog) -> list[str]:
    """The chosen paths ([] when cancelled); the next dialog starts where this one ended."""
    global _last_folder
    if not dialog.exec():
        return []
    _last_folder = dialog.directory().absolutePath()
    return dialog.selectedFiles()


def open_files(parent: QWidget | None, title: str, name_filter: str) -> list[str]:
    return _run(build(parent, title, QFileDialog.FileMode.ExistingFiles, name_filter))


def open_file(parent: QWidget | None, title: str, name_filter: str) -> str:
    """The chosen file, or "" when cancelled."""
    return next(iter(_run(build(parent, title, QFileDialog.FileMode.ExistingFile, name_filter))), "")


def save_file(parent: QWidget | None, title: str, default_name: str, name_filter: str = "") -> str:
    start = str(Path(_last_folder) / default_name) if _last_folder else default_name
    return next(iter(_run(build(parent, title, QFileDialog.FileMode.AnyFile, name_filter, start, save=True))), "")


def folder(parent: QWidget | None, title: str) -> str:
    return next(iter(_run(build(parent, title, QFileDialog.FileMode.Directory))), "")
