"""The cutout grid: every object's tile in one sortable, filterable, wrapping view.

Five pieces, each thin:

- `TileModel` exposes one row per object of the shared `VettingState` (row = object index).
- `TileProxy` is the display order: a flat list model over the array of object indices
  the session computes with numpy (`rbvet.core.session.display_order`: one mask, one
  ``lexsort``), so a re-sort or re-filter of 20k objects makes no Python call per row, and
  neither does the view's layout.
- `TileDelegate` paints a cell straight from the atlas buffer (greyscale ``QImage`` pages
  over it, no copies), with the score and the label state.
- `TileView` is the ``QListView`` (uniform cells on a wrapping grid) that shows the tiles,
  keeps its current tile and the state's selected object in step, and turns the labeling
  keys into calls of a labeler (`rbvet.gui.labeling.LabelController`).
- `GridPanel` puts a sort / filter / tile-size toolbar above the view.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import (
    QAbstractListModel,
    QItemSelectionModel,
    QModelIndex,
    QPointF,
    QRect,
    QSize,
    QStringListModel,
    Qt,
    pyqtSignal,
)
from PyQt6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeySequence,
    QPainter,
    QPalette,
    QPen,
    QPolygonF,
    QRegion,
    QStaticText,
    QTransform,
)
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbvet.core.session import (
    BOGUS,
    FILTER_INJECTED,
    FILTERS,
    FIXED_DIRECTION_SORTS,
    REAL,
    SORT_SCORE,
    SORTS,
    UNLABELED,
    column_sort_key,
    label_name,
    numeric_columns,
)
from rbvet.gui.state import VettingState

DISPLAY_ROLE = Qt.ItemDataRole.DisplayRole.value
TOOLTIP_ROLE = Qt.ItemDataRole.ToolTipRole.value
SCORE_ROLE = Qt.ItemDataRole.UserRole.value + 1
"""float: the object's score, NaN when unscored."""
OBJECT_INDEX_ROLE = Qt.ItemDataRole.UserRole.value + 2
"""int: the object's index in `VettingData` (its catalog row)."""
LABEL_ROLE = Qt.ItemDataRole.UserRole.value + 3
"""int: `UNLABELED`, `BOGUS` or `REAL`."""
REASON_ROLE = Qt.ItemDataRole.UserRole.value + 4
"""str: why the object was not scored; empty when it was."""

TILE_FLAGS = (
    Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren
)
"""Tiles can be selected, not edited or dragged."""

KEYS_HINT = "R real · B bogus · U clear · Space next unlabeled · Ctrl+Z undo"
KEYS_HELP = (
    "R / B: label the current tile real / bogus and move on\n"
    "    (with several tiles selected: label them all and stay)\n"
    "U or Backspace: clear the label\n"
    "Space: next unlabeled tile\n"
    "Shift/Ctrl-click, drag, Ctrl+A: select several tiles\n"
    "Ctrl+Z / Ctrl+Shift+Z: undo / redo (any number of steps)"
)

DEFAULT_TILE_HEIGHT = 31
"""Atlas tile height assumed before any data arrive (`rbvet.core.cutouts.atlas.tile_shape`)."""
DEFAULT_TILE_SCALE = 2 * DEFAULT_TILE_HEIGHT
MAX_TILE_ZOOM = 6


class TileModel(QAbstractListModel):
    """One row per object of ``state.data``; the row is the object index.

    Resets when the state's data change; on label changes it emits ``dataChanged`` for
    the changed rows only (one signal per run of consecutive rows, or a single span over
    all of them when there are more than `MAX_CHANGED_RANGES` runs).

    Parameters
    ----------
    state : VettingState
    parent : QObject, optional
    """

    MAX_CHANGED_RANGES = 16
    """More runs of changed rows than this are signalled as one span (bulk labels)."""

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self._state = state
        self._data = state.data
        state.dataChanged.connect(self._on_data_changed)
        state.labelsChanged.connect(self._on_labels_changed)

    @property
    def state(self):
        """The `VettingState` this model shows."""
        return self._state

    @property
    def vetting_data(self):
        """The `VettingData` the rows currently describe (None when nothing is open)."""
        return self._data

    def rowCount(self, parent=None):
        if (parent is not None and parent.isValid()) or self._data is None:
            return 0
        return len(self._data)

    def data(self, index, role=DISPLAY_ROLE):
        if not index.isValid() or self._data is None:
            return None
        row = index.row()
        if role == OBJECT_INDEX_ROLE:
            return row
        data = self._data
        if role == SCORE_ROLE:
            return float(data.scores[row])
        if role == LABEL_ROLE:
            return int(data.labels[row])
        if role == REASON_ROLE:
            return str(data.reasons[row])
        if role == DISPLAY_ROLE:
            return score_text(data.scores[row], data.reasons[row])
        if role == TOOLTIP_ROLE:
            label = label_name(data.labels[row])
            return (
                f"object {row}   x {data.x[row]:.1f}   y {data.y[row]:.1f}\n"
                f"score {score_text(data.scores[row], data.reasons[row])}   label {label}"
            )
        return None

    def roleNames(self):
        names = super().roleNames()
        names.update(
            {
                SCORE_ROLE: b"score",
                OBJECT_INDEX_ROLE: b"objectIndex",
                LABEL_ROLE: b"label",
                REASON_ROLE: b"reason",
            }
        )
        return names

    def _on_data_changed(self):
        self.beginResetModel()
        self._data = self._state.data
        self.endResetModel()

    def _on_labels_changed(self, indices):
        if self._data is None:
            return
        rows = np.unique(np.asarray(indices, np.intp))
        rows = rows[(rows >= 0) & (rows < len(self._data))]
        if not len(rows):
            return
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        if len(breaks) >= self.MAX_CHANGED_RANGES:  # a bulk action: one span, one repaint
            starts, ends = rows[:1], rows[-1:]
        else:
            starts = rows[np.r_[0, breaks]]
            ends = rows[np.r_[breaks - 1, len(rows) - 1]]
        roles = [LABEL_ROLE, TOOLTIP_ROLE]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self.dataChanged.emit(self.index(start), self.index(end), roles)


def score_text(score, reason=""):
    """A score to three decimals, or the reason it is missing."""
    if np.isfinite(score):
        return f"{score:.3f}"
    return str(reason) or "unscored"


class TileProxy(QStringListModel):
    """The tiles in display order: a flat list model over an array of object indices.

    The sort key, direction and filter are the session's (`VettingSession.set_sort`,
    `set_filter`); the order is one `VettingSession.display_order` call (numpy), and
    mapping between display rows and objects is array indexing both ways; no Python runs
    per row.

    Why not a ``QSortFilterProxyModel``: its ``lessThan``/``filterAcceptsRow`` would be
    Python calls per comparison and per row. Why not a ``QAbstractProxyModel``: every
    layout of a ``QListView`` builds a model index for every row, so a Python ``index()``
    or ``rowCount()`` costs a Python call per row per layout (about 60 ms for 20k rows
    here, against 1 ms). ``QStringListModel`` keeps row bookkeeping in C++; its string
    list only holds the row count (empty strings). Only ``data`` and ``flags`` are Python,
    and views call them for visible tiles only.

    The order is computed again at the state's ``orderChanged`` (the session knows when
    the threshold or the labels move it: threshold filters, uncertainty sort, label
    filters, suspicious sort). A new order is a ``layoutChanged`` with the persistent
    indexes moved to their objects' new rows, so the selection and the current tile stay
    on their objects; rows are appended before it or dropped from the end after it when
    the number shown changes.

    Parameters
    ----------
    state : VettingState
    parent : QObject, optional

    Signals
    -------
    orderChanged()
        The display order or the set of objects shown changed (or the data were reset).
    settingsChanged()
        The sort key, direction or filter changed (the order may be the same).
    """

    orderChanged = pyqtSignal()
    settingsChanged = pyqtSignal()

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self._state = state
        self._session = state.session
        self._source = None
        self._order = np.empty(0, np.intp)
        self._rows = np.empty(0, np.intp)
        state.orderChanged.connect(self._on_order_changed)
        state.orderSettingsChanged.connect(self.settingsChanged)

    # -- public API ---------------------------------------------------------------------

    @property
    def sort_key(self):
        """A key of `rbvet.core.session.SORTS` or a `column_sort_key`."""
        return self._session.sort_key

    @property
    def descending(self):
        return self._session.descending

    @property
    def filter_name(self):
        """One of `FILTERS`."""
        return self._session.filter_name

    def sourceModel(self):
        """The `TileModel` whose rows (objects) this model orders."""
        return self._source

    def setSourceModel(self, model):
        """Order the rows of ``model`` (a `TileModel`)."""
        if self._source is not None:
            self._source.modelReset.disconnect(self._on_source_reset)
            self._source.dataChanged.disconnect(self._on_source_data_changed)
        self._source = model
        model.modelReset.connect(self._on_source_reset)
        model.dataChanged.connect(self._on_source_data_changed)
        self._on_source_reset()

    def order(self):
        """Object indices in display order (a copy)."""
        return self._order.copy()

    def row_of(self, object_index):
        """Display row of object ``object_index``, or -1 when it is filtered out."""
        if 0 <= object_index < len(self._rows):
            return int(self._rows[object_index])
        return -1

    def rows_of(self, objects):
        """Display rows (ndarray) of the objects at indices ``objects``; -1 where hidden."""
        return self._rows[np.asarray(objects, np.intp)]

    def object_at(self, row):
        """Object index shown at display row ``row``."""
        return int(self._order[row])

    def mapToSource(self, index):
        """The `TileModel` index of the object at display index ``index``."""
        if not index.isValid() or index.row() >= len(self._order):
            return QModelIndex()
        return self._source.index(self.object_at(index.row()))

    def mapFromSource(self, source_index):
        """The display index of `TileModel` index ``source_index`` (invalid if hidden)."""
        row = self.row_of(source_index.row()) if source_index.isValid() else -1
        return self.index(row) if row >= 0 else QModelIndex()

    def objects_in_selection(self, selection):
        """Object indices (sorted) of the display rows in a ``QItemSelection``."""
        shown = len(self._order)
        chunks = [
            self._order[r.top() : min(r.bottom() + 1, shown)] for r in selection if r.isValid()
        ]
        return np.unique(np.concatenate(chunks)) if chunks else np.empty(0, np.intp)

    def set_sort(self, key, descending=None):
        """Sort by ``key``; ``descending=None`` uses the key's natural direction."""
        self._session.set_sort(key, descending)

    def set_filter(self, name):
        """Show only the objects filter ``name`` (one of `FILTERS`) keeps."""
        self._session.set_filter(name)

    def refresh(self):
        """Recompute the order now (it also follows the state by itself)."""
        self._apply(self._compute())

    # -- QAbstractItemModel -------------------------------------------------------------

    def data(self, index, role=DISPLAY_ROLE):
        row = index.row()
        if not index.isValid() or row >= len(self._order):
            return None
        object_index = int(self._order[row])
        if role == OBJECT_INDEX_ROLE:
            return object_index
        return self._source.data(self._source.index(object_index), role)

    def flags(self, index):
        return TILE_FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole.value):
        return False

    def sort(self, column, order=Qt.SortOrder.AscendingOrder):
        """Qt's entry point: sort by score in ``order``."""
        self.set_sort(SORT_SCORE, order == Qt.SortOrder.DescendingOrder)

    # -- internals ----------------------------------------------------------------------

    def _vetting_data(self):
        return self._source.vetting_data if self._source is not None else None

    def _compute(self):
        if self._source is None:
            return np.empty(0, np.intp)
        return self._session.display_order()

    def _set_order(self, order):
        data = self._vetting_data()
        rows = np.full(0 if data is None else len(data), -1, np.intp)
        rows[order] = np.arange(len(order))
        self._order, self._rows = order, rows

    def _apply(self, order):
        if np.array_equal(order, self._order):
            return
        old_count, new_count = len(self._order), len(order)
        if new_count > old_count:
            self.insertRows(old_count, new_count - old_count)
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        if persistent:
            old_rows = np.array([index.row() for index in persistent], np.intp)
            known = (old_rows >= 0) & (old_rows < old_count)
            objects = np.full(len(old_rows), -1, np.intp)
            objects[known] = self._order[old_rows[known]]
        self._set_order(order)
        if persistent:
            new_rows = np.full(len(objects), -1, np.intp)
            new_rows[objects >= 0] = self._rows[objects[objects >= 0]]
            moved = [self.index(row) if row >= 0 else QModelIndex() for row in new_rows.tolist()]
            self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()
        if new_count < old_count:
            self.removeRows(new_count, old_count - new_count)
        self.orderChanged.emit()

    def _on_source_reset(self):
        self._set_order(self._compute())
        # The row count without a million Python strings to convert: empty, then rows
        # inserted in C++ (twice as fast as setStringList of empty strings).
        self.setStringList([])
        if len(self._order):
            self.insertRows(0, len(self._order))
        self.orderChanged.emit()

    def _on_order_changed(self):
        if self._source is not None:
            self.refresh()

    def _on_source_data_changed(self, top_left, bottom_right, roles=()):
        rows = self._rows[top_left.row() : bottom_right.row() + 1]
        rows = rows[rows >= 0]
        if len(rows):
            first, last = int(rows.min()), int(rows.max())
            self.dataChanged.emit(self.index(first), self.index(last), list(roles))


ABOVE, BELOW, UNSCORED, DISAGREE, SELECTED = "above", "below", "unscored", "disagree", "selected"
"""Frame states besides the labels (keys of the delegate's pens)."""


class TileDelegate(QStyledItemDelegate):
    """Paints a tile, its score and its state straight from the shared atlas buffer.

    The atlas (N, h, w) uint8 is wrapped without a copy as greyscale ``QImage`` pages of
    `TILES_PER_PAGE` consecutive tiles each; a cell draws its tile's rows of its page,
    scaled into the tile rectangle with nearest-neighbour sampling, so hot pixels stay
    sharp. (One image for all N tiles would work too, but source offsets beyond 10^4
    pixels push Qt's raster engine off its fixed-point fast path: about 2.5x slower.)
    The delegate keeps a reference to the numpy buffer for as long as the pages exist;
    in-place updates of ``data.atlas`` show at the next repaint.

    A cell, top to bottom: the tile (linear channel | asinh channel) inside a frame, then
    a caption with the score on the left and the label on the right. Colours come from
    the Okabe–Ito colour-blind-safe palette (sky blue for real, vermillion for bogus,
    yellow for a conflict), and no state is told by colour alone:

    - unlabeled: a thin frame, sky blue when the score is at or above the threshold and
      vermillion below it; the score text takes the same colour;
    - labeled real / bogus: a thick frame, sky blue / vermillion, and the word ``REAL`` /
      ``BOGUS`` in the caption (``R`` / ``B`` when tiles are too small for words);
    - label contradicting the score (real below the threshold, bogus above): the thick
      frame is striped with yellow, a yellow triangle marks the tile's top-right corner,
      and the caption reads ``! REAL`` / ``! BOGUS``;
    - unscored: its picture dimmed (dark when it has no stamp) with the reason written
      over it, a grey frame, "unscored";
    - selected: a lighter cell background and a white outline;
    - data with tags (`VettingData.tags`, the kind of an injected object): the tag where a
      label would go, when it fits.

    Parameters
    ----------
    state : VettingState
    parent : QObject, optional
    """

    REAL_COLOUR = QColor("#56B4E9")
    BOGUS_COLOUR = QColor("#D55E00")
    DISAGREE_COLOUR = QColor("#F0E442")
    REAL_TEXT = QColor("#7cc6f0")
    BOGUS_TEXT = QColor("#f08a4b")
    MUTED_REAL = QColor("#2f6f94")
    MUTED_BOGUS = QColor("#8a3f0a")
    UNSCORED_FRAME = QColor("#505050")
    UNSCORED_FILL = QColor("#121212")
    UNSCORED_VEIL = QColor(18, 18, 18, 130)
    UNSCORED_TEXT = QColor("#9a9a9a")
    SELECTED_FILL = QColor("#4a4f57")
    SELECTED_OUTLINE = QColor("#f2f2f2")
    BACKGROUND = QColor("#1e1e1e")
    TEXT = QColor("#d8d8d8")

    MARGIN = 5
    """Pixels between the cell edge and the tile; the frame is drawn in them."""
    THIN_FRAME = 1
    THICK_FRAME = 3
    REASON_ALIGNMENT = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
    TILES_PER_PAGE = 256
    """Tiles per atlas image: 256 x 31 rows keeps source offsets under 10^4 pixels."""

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self._state = state
        self._data = None
        self._atlas = None
        self._pages = []
        self._tile_height_px = DEFAULT_TILE_HEIGHT
        self._tile_width_px = 2 * DEFAULT_TILE_HEIGHT + 1
        self._scale = DEFAULT_TILE_SCALE
        self.caption_font = QFont()
        self.caption_font.setPointSizeF(max(self.caption_font.pointSizeF(), 9.0))
        self.reason_font = QFont(self.caption_font)
        self.reason_font.setItalic(True)
        self._pens = self._make_pens()
        self._texts = {}
        self._layout()
        state.dataChanged.connect(self._wrap_atlas)
        self._wrap_atlas()

    @property
    def tile_scale(self):
        """Height of a drawn tile, in screen pixels."""
        return self._scale

    @property
    def cell_size(self):
        """Size of a whole cell: tile, frame margin and caption."""
        return QSize(self._cell_size)

    @property
    def tile_size(self):
        """Size of the drawn tile (without frame and caption)."""
        return QSize(self._tile_rect.width(), self._tile_rect.height())

    def set_tile_scale(self, pixels):
        """Draw tiles ``pixels`` high (the width follows the atlas's aspect ratio)."""
        self._scale = max(int(pixels), 8)
        self._layout()
        self.sizeHintChanged.emit(QModelIndex())

    def sizeHint(self, option, index):
        return self._cell_size

    def paint(self, painter, option, index):
        data = self._data
        if data is None or not index.isValid():
            return
        obj = index.data(OBJECT_INDEX_ROLE)
        cell = option.rect
        left, top = cell.left(), cell.top()
        tile = self._tile_rect.translated(left, top)
        score = float(data.scores[obj])
        label = int(data.labels[obj])
        scored = score == score
        above = scored and score >= self._state.threshold

        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(cell, self.SELECTED_FILL)
            painter.setPen(self._pens[SELECTED])
            painter.drawRect(cell.adjusted(1, 1, -1, -1))

        if self._pages:  # unscored objects too: their stamp, when they have one
            page, offset = divmod(obj, self.TILES_PER_PAGE)
            height = self._tile_height_px
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            painter.drawImage(
                tile, self._pages[page], QRect(0, offset * height, self._tile_width_px, height)
            )
        if not scored:
            # The picture dimmed, not hidden, under the reason; its black floor lifted to
            # the unscored fill, so a tile without a stamp is that fill exactly.
            if self._pages:
                painter.fillRect(tile, self.UNSCORED_VEIL)
                painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Lighten)
            painter.fillRect(tile, self.UNSCORED_FILL)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
            painter.setFont(self.reason_font)
            painter.setPen(self.UNSCORED_TEXT)
            painter.drawText(
                tile.adjusted(3, 2, -3, -2),
                self.REASON_ALIGNMENT,
                str(data.reasons[obj]) or "unscored",
            )

        disagree = label != UNLABELED and scored and (label == REAL) != above
        if label == UNLABELED:
            painter.setPen(self._pens[(ABOVE if above else BELOW) if scored else UNSCORED])
            painter.drawRect(tile.adjusted(-1, -1, 0, 0))
        else:
            painter.setPen(self._pens[label])
            painter.drawRect(tile.adjusted(-2, -2, 1, 1))
        if disagree:
            painter.setPen(self._pens[DISAGREE])
            painter.drawRect(tile.adjusted(-2, -2, 1, 1))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.DISAGREE_COLOUR)
            painter.drawPolygon(self._corner_mark.translated(left, top))
            painter.setBrush(Qt.BrushStyle.NoBrush)

        caption = self._caption_rect.translated(left, top)
        painter.setFont(self.caption_font)
        if scored:
            painter.setPen(self.REAL_TEXT if above else self.BOGUS_TEXT)
            text = self._text(f"{score:.3f}")
        else:
            painter.setPen(self.UNSCORED_TEXT)
            text = self._text("unscored")
        painter.drawStaticText(caption.left(), caption.top(), text)
        if label != UNLABELED:
            painter.setPen(self.REAL_TEXT if label == REAL else self.BOGUS_TEXT)
            word = self._label_words[label]
            text = self._text(f"! {word}" if disagree else word)
            painter.drawStaticText(
                caption.right() + 1 - round(text.size().width()), caption.top(), text
            )
        elif data.tags is not None:  # e.g. an injected object's kind, when it fits
            tag = self._text(str(data.tags[obj]))
            room = caption.width() - text.size().width() - self.MARGIN
            if tag.size().width() <= room:
                painter.setPen(self.TEXT)
                painter.drawStaticText(
                    caption.right() + 1 - round(tag.size().width()), caption.top(), tag
                )

    # -- internals ----------------------------------------------------------------------

    def _text(self, string):
        """A caption as ``QStaticText``, laid out once (there are ~1000 distinct ones)."""
        text = self._texts.get(string)
        if text is None:
            text = QStaticText(string)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.prepare(QTransform(), self.caption_font)
            self._texts[string] = text
        return text

    def _make_pens(self):
        """Frame pens by state: unlabeled above / below the threshold, unscored, labeled
        `REAL` / `BOGUS`, the disagreement stripes and the selection outline."""

        def pen(colour, width, dashed=False):
            made = QPen(colour, width)
            made.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            if dashed:
                made.setCapStyle(Qt.PenCapStyle.FlatCap)
                made.setDashPattern([2.0, 2.0])
            return made

        return {
            ABOVE: pen(self.MUTED_REAL, self.THIN_FRAME),
            BELOW: pen(self.MUTED_BOGUS, self.THIN_FRAME),
            UNSCORED: pen(self.UNSCORED_FRAME, self.THIN_FRAME),
            REAL: pen(self.REAL_COLOUR, self.THICK_FRAME),
            BOGUS: pen(self.BOGUS_COLOUR, self.THICK_FRAME),
            DISAGREE: pen(self.DISAGREE_COLOUR, self.THICK_FRAME, dashed=True),
            SELECTED: pen(self.SELECTED_OUTLINE, 2),
        }

    def _wrap_atlas(self):
        data = self._state.data
        self._data = data
        if data is None or len(data) == 0:
            self._atlas, self._pages = None, []
            return
        atlas = np.ascontiguousarray(data.atlas, dtype=np.uint8)
        n, height, width = atlas.shape
        self._atlas = atlas
        per_page = self.TILES_PER_PAGE
        self._pages = [
            QImage(
                atlas[start : start + per_page].data,
                width,
                min(per_page, n - start) * height,
                width,
                QImage.Format.Format_Grayscale8,
            )
            for start in range(0, n, per_page)
        ]
        if (height, width) != (self._tile_height_px, self._tile_width_px):
            self._tile_height_px, self._tile_width_px = height, width
            self._layout()
            self.sizeHintChanged.emit(QModelIndex())

    def _layout(self):
        margin = self.MARGIN
        height = self._scale
        width = round(height * self._tile_width_px / self._tile_height_px)
        metrics = QFontMetrics(self.caption_font)
        caption_height = metrics.height() + 2
        room = width - metrics.horizontalAdvance("0.000 ! BOGUS")
        self._label_words = {REAL: "REAL", BOGUS: "BOGUS"} if room > 2 else {REAL: "R", BOGUS: "B"}
        self._tile_rect = QRect(margin, margin, width, height)
        self._caption_rect = QRect(margin, margin + height + 2, width, caption_height)
        self._cell_size = QSize(width + 2 * margin, height + 2 * margin + caption_height + 1)
        mark = max(7, height // 5)
        right = margin + width
        self._corner_mark = QPolygonF(
            [
                QPointF(right - mark, margin),
                QPointF(right, margin),
                QPointF(right, margin + mark),
            ]
        )


class TileView(QListView):
    """A wrapping grid of tiles that follows and drives the state's selected object.

    Clicking a tile or moving the current tile with the keyboard selects that object in
    the state; when the state selects an object, its tile becomes current and is scrolled
    into view (if the filter shows it). When the order changes, the current tile is
    kept in view. Several tiles can be selected (ctrl/shift-click, rubber band, ctrl-A)
    for labeling them at once: `selected_objects`.

    Labeling keys (handled here, carried out by the labeler, see `set_labeler`):

    ====================  ================================================================
    R / B                 label real / bogus: the selection when several tiles are
                          selected, else the current tile, after which the current tile
                          moves on to the next one in display order (a vetting flow)
    U, Backspace, Delete  clear the label (the current tile stays)
    Space                 go to the next unlabeled tile in display order (wrapping round)
    Ctrl+Z                undo the last labeling action (any depth, bulk actions too)
    Ctrl+Shift+Z, Ctrl+Y  redo
    ====================  ================================================================

    The grid is a list-mode ``QListView`` flowing left to right with wrapping, uniform
    item sizes, static movement, single-pass layout and a fixed grid size: it looks like
    icon mode, but icon mode keeps per-item geometry that Qt rebuilds on every relayout
    (tens of ms at 20k tiles, plus a model index per row), while this layout is a few
    C++ arithmetic passes.

    Parameters
    ----------
    state : VettingState
    proxy : TileProxy
    parent : QWidget, optional
    """

    TILE_SPACING = 2
    """Minimum pixels between cells; spare width is spread evenly over the columns."""
    LABEL_KEYS = {
        Qt.Key.Key_R: REAL,
        Qt.Key.Key_B: BOGUS,
        Qt.Key.Key_U: UNLABELED,
        Qt.Key.Key_Backspace: UNLABELED,
        Qt.Key.Key_Delete: UNLABELED,
    }
    """Keys (without modifiers) that give a label."""

    def __init__(self, state, proxy, parent=None):
        super().__init__(parent)
        self._state = state
        self._proxy = proxy
        self._labeler = None
        self._following_state = False
        self.delegate = TileDelegate(state, self)
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setMovement(QListView.Movement.Static)
        self.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionRectVisible(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setDragEnabled(False)
        self.setItemDelegate(self.delegate)
        self.setModel(proxy)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Base, TileDelegate.BACKGROUND)
        palette.setColor(QPalette.ColorRole.Text, TileDelegate.TEXT)
        self.setPalette(palette)
        self._update_grid()
        self.delegate.sizeHintChanged.connect(self._update_grid)
        self.selectionModel().currentChanged.connect(self._on_current_changed)
        state.selectionChanged.connect(self._on_state_selection)
        state.thresholdChanged.connect(self.viewport().update)
        proxy.orderChanged.connect(self._on_order_changed)

    def set_tile_scale(self, pixels):
        """Show tiles ``pixels`` high on screen."""
        self.delegate.set_tile_scale(pixels)
        self.doItemsLayout()
        self._keep_current_in_view()

    def selected_objects(self):
        """Object indices (sorted) of the selected tiles."""
        return self._proxy.objects_in_selection(self.selectionModel().selection())

    def set_labeler(self, labeler):
        """Carry out the labeling keys with ``labeler``.

        Parameters
        ----------
        labeler : object or None
            With ``label(indices, label) -> bool`` (False when nothing could be labeled),
            ``undo()`` and ``redo()``, e.g. `rbvet.gui.labeling.LabelController`. Without
            one, labels are set in the state only (no store, no undo).
        """
        self._labeler = labeler

    def label_selection(self, label, advance=True):
        """Give ``label`` to the selected tiles, or to the current tile when at most one is
        selected.

        Parameters
        ----------
        label : int
            `REAL`, `BOGUS` or `UNLABELED`.
        advance : bool
            After labeling the current tile real or bogus, make the next tile in display
            order current (the labeled tile may have moved or been filtered out by then).

        Returns
        -------
        ndarray of intp
            The object indices given to the labeler (empty when there was nothing to label
            or the labeler refused).
        """
        selected = self.selected_objects()
        current = self.currentIndex()
        next_object = -1
        if len(selected) > 1:
            objects = selected
        elif current.isValid():
            objects = np.array([current.data(OBJECT_INDEX_ROLE)], np.intp)
            if advance and label != UNLABELED and current.row() + 1 < self._proxy.rowCount():
                next_object = self._proxy.object_at(current.row() + 1)
        else:
            return np.empty(0, np.intp)
        if self._labeler is not None:
            if not self._labeler.label(objects, label):
                return np.empty(0, np.intp)
        elif self._state.data is not None:
            self._state.set_labels(objects, label)
        if next_object >= 0:
            self._state.select(next_object)
        return objects

    def next_unlabeled(self):
        """Make the next unlabeled (scored) tile after the current one current, wrapping
        round to the first.

        Returns
        -------
        int
            Its object index, or -1 when every scored tile shown is labeled.
        """
        data = self._state.data
        order = self._proxy.order()
        if data is None or not len(order):
            return -1
        candidates = np.flatnonzero(
            (data.labels[order] == UNLABELED) & np.isfinite(data.scores[order])
        )
        if not len(candidates):
            return -1
        current = self.currentIndex()
        start = current.row() + 1 if current.isValid() else 0
        later = candidates[candidates >= start]
        target = int(order[later[0] if len(later) else candidates[0]])
        self._state.select(target)
        return target

    def visualRegionForSelection(self, selection):  # noqa: N802 (Qt's name)
        """The viewport: a changed selection repaints the visible tiles only.

        Qt's own version walks every selected row for its rectangle, in C++ but one row
        at a time: Ctrl+A on a million tiles froze the window for a second.
        """
        return QRegion(self.viewport().rect())

    def keyPressEvent(self, event):
        if event.matches(QKeySequence.StandardKey.Undo):
            if self._labeler is not None:
                self._labeler.undo()
            event.accept()
            return
        if event.matches(QKeySequence.StandardKey.Redo):
            if self._labeler is not None:
                self._labeler.redo()
            event.accept()
            return
        plain = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if plain == Qt.KeyboardModifier.NoModifier:
            key = event.key()
            if key in self.LABEL_KEYS:
                self.label_selection(self.LABEL_KEYS[key])
                event.accept()
                return
            if key == Qt.Key.Key_Space:
                self.next_unlabeled()
                event.accept()
                return
        super().keyPressEvent(event)

    def object_at(self, point):
        """Object index of the tile under viewport point ``point``, or -1."""
        index = self.indexAt(point)
        return index.data(OBJECT_INDEX_ROLE) if index.isValid() else -1

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._update_grid()

    def _update_grid(self, _index=None):
        """Spread the columns over the width (as if the scroll bar were always shown)."""
        cell = self.delegate.cell_size + QSize(self.TILE_SPACING, self.TILE_SPACING)
        scroll_bar = self.style().pixelMetric(
            QStyle.PixelMetric.PM_ScrollBarExtent, None, self.verticalScrollBar()
        )
        # QListView wraps once a row would reach the last pixel: keep one free
        width = self.maximumViewportSize().width() - scroll_bar - 1
        columns = max(width // cell.width(), 1)
        grid = QSize(max(width // columns, cell.width()), cell.height())
        if grid != self.gridSize():
            self.setGridSize(grid)
        self.verticalScrollBar().setSingleStep(max(cell.height() // 3, 1))

    def _on_current_changed(self, current, _previous):
        if self._following_state or not current.isValid():
            return
        self._state.select(current.data(OBJECT_INDEX_ROLE))

    def _on_state_selection(self, object_index):
        self._following_state = True
        try:
            row = self._proxy.row_of(object_index) if object_index >= 0 else -1
            if row < 0:
                self.selectionModel().clear()
                return
            index = self._proxy.index(row)
            if index != self.currentIndex():
                self.selectionModel().setCurrentIndex(
                    index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                )
            self.scrollTo(index)
        finally:
            self._following_state = False

    def _on_order_changed(self):
        self._keep_current_in_view()

    def _keep_current_in_view(self):
        current = self.currentIndex()
        if current.isValid():
            self.executeDelayedItemsLayout()
            self.scrollTo(current, QAbstractItemView.ScrollHint.PositionAtCenter)


class HintLabel(QLabel):
    """A grey one-line hint that takes the room left and elides itself to fit (and
    disappears when too little of it would show)."""

    MIN_SHOWN = 8
    """Fewest characters worth showing."""

    def __init__(self, text, parent=None):
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setStyleSheet(f"color: {TileDelegate.UNSCORED_TEXT.name()};")

    def paintEvent(self, event):
        metrics = self.fontMetrics()
        if self.width() < metrics.averageCharWidth() * self.MIN_SHOWN:
            return
        painter = QPainter(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        text = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, self.width())
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignVCenter, text)


class GridPanel(QWidget):
    """The grid with its toolbar: sort key and direction, filter, tile size, count.

    Once the frame has been assessed (`VettingSession.set_assessment`), the filter box also
    offers `FILTER_INJECTED`: a second grid (``injected_view``) then takes the place of the
    frame's, over the session's read-only ``injected_session`` (a `VettingState` of its
    own), in its fixed order (kind by kind, the worst first); the sort box gives way to a
    line saying so, and a line under the toolbar says what was missed and let through at
    the threshold. The frame's grid keeps its order and selection underneath.

    Parameters
    ----------
    state : VettingState
    parent : QWidget, optional

    Attributes
    ----------
    model : TileModel
    proxy : TileProxy
        The order shown; the toolbar's widgets follow it when it is set directly.
    view : TileView
    sort_combo, filter_combo : QComboBox
        Item data of ``sort_combo`` are sort keys; texts of ``filter_combo`` are `FILTERS`.
    descending_button : QToolButton
        Checked for descending order (disabled for keys with one sensible direction).
    size_slider : QSlider
        Tile height in screen pixels, in steps of the atlas tile height.
    count_label : QLabel
        "N of M shown".
    keys_label : QLabel
        A reminder of the labeling keys (all of them in its tool tip).
    injected_summary_label : QLabel
        Under the toolbar while the injected objects are shown:
        `VettingSession.injected_summary`.
    injected_state : VettingState
        Over ``state.session.injected_session``.
    injected_proxy : TileProxy
    injected_view : TileView
        The injected objects' grid; its labeling keys only say they are not labels.
    pages : QStackedWidget
        ``view`` or ``injected_view``.
    """

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.model = TileModel(state, self)
        self.proxy = TileProxy(state, self)
        self.proxy.setSourceModel(self.model)
        self.view = TileView(state, self.proxy, self)
        injected = state.session.injected_session
        self.injected_state = VettingState(self, session=injected)
        self.injected_model = TileModel(self.injected_state, self)
        self.injected_proxy = TileProxy(self.injected_state, self)
        self.injected_proxy.setSourceModel(self.injected_model)
        self.injected_view = TileView(self.injected_state, self.injected_proxy, self)
        self.injected_view.set_labeler(injected)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.view)
        self.pages.addWidget(self.injected_view)
        self.injected_order_label = QLabel("Order: kind, worst first")
        self.injected_order_label.setToolTip(
            "Injected objects, kind by kind: stars and galaxies scored lowest first, "
            "artifacts scored highest first; the undetected at the end of their kind"
        )
        self.injected_order_label.hide()
        self.injected_summary_label = QLabel()
        self.injected_summary_label.setWordWrap(True)
        self.injected_summary_label.setContentsMargins(6, 0, 6, 4)
        self.injected_summary_label.hide()

        self.sort_combo = QComboBox()
        self.sort_combo.setToolTip("Sort tiles by")
        self.sort_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.sort_combo.setMinimumContentsLength(10)
        self.descending_button = QToolButton()
        self.descending_button.setCheckable(True)
        self.descending_button.setToolTip("Descending / ascending order")
        self.filter_combo = QComboBox()
        self.filter_combo.setToolTip(
            "real / bogus: score at or above / below the threshold\n"
            "disagree: label contradicts the score\n"
            "unscored: objects the CNN could not score\n"
            "annotators disagree: two annotators gave the object different labels"
        )
        # As wide as the short names (the toolbar fits a narrow window); the list shows
        # "annotators disagree" in full.
        self.filter_combo.addItems(FILTERS[:-1])
        self.filter_combo.setMinimumWidth(self.filter_combo.sizeHint().width())
        self.filter_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.filter_combo.addItems(FILTERS[-1:])
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setToolTip("Tile size")
        self.size_slider.setMaximumWidth(160)
        self.size_slider.setMinimumWidth(80)
        self.size_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.count_label = QLabel()
        self.count_label.setMinimumWidth(
            self.count_label.fontMetrics().horizontalAdvance("00000 of 00000 shown")
        )
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.keys_label = HintLabel(KEYS_HINT)
        self.keys_label.setToolTip(KEYS_HELP)

        toolbar = QHBoxLayout()
        toolbar.setContentsMargins(6, 4, 6, 4)
        self.sort_caption = QLabel("Sort")
        toolbar.addWidget(self.sort_caption)
        toolbar.addWidget(self.sort_combo)
        toolbar.addWidget(self.descending_button)
        toolbar.addWidget(self.injected_order_label)
        toolbar.addSpacing(12)
        toolbar.addWidget(QLabel("Show"))
        toolbar.addWidget(self.filter_combo)
        toolbar.addSpacing(12)
        toolbar.addWidget(self.keys_label, 1)
        toolbar.addWidget(QLabel("Size"))
        toolbar.addWidget(self.size_slider)
        toolbar.addSpacing(12)
        toolbar.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(toolbar)
        layout.addWidget(self.injected_summary_label)
        layout.addWidget(self.pages, 1)

        self._fill_sort_combo()
        self._set_slider_steps(DEFAULT_TILE_HEIGHT)
        self.size_slider.setValue(self.view.delegate.tile_scale)
        self._follow_proxy()

        self.sort_combo.activated.connect(self._on_sort_chosen)
        self.descending_button.toggled.connect(self._on_direction_toggled)
        self.filter_combo.currentTextChanged.connect(self.proxy.set_filter)
        self.size_slider.valueChanged.connect(self._on_size_changed)
        self.proxy.orderChanged.connect(self._follow_proxy)
        self.proxy.settingsChanged.connect(self._follow_proxy)
        self.proxy.modelReset.connect(self._on_new_data)
        state.injectedChanged.connect(self._on_injected_changed)
        state.thresholdChanged.connect(self._show_injected_summary)
        self.injected_proxy.orderChanged.connect(self._follow_proxy)
        self.injected_proxy.modelReset.connect(self._follow_proxy)

    def _on_new_data(self):
        self._fill_sort_combo()
        data = self.model.vetting_data
        if data is not None and len(data) and data.atlas.shape[1] != self.size_slider.singleStep():
            zoom = self.size_slider.value() / self.size_slider.singleStep()
            self._set_slider_steps(data.atlas.shape[1])
            self.size_slider.setValue(round(zoom) * data.atlas.shape[1])
        self._follow_proxy()

    def _fill_sort_combo(self):
        data = self.model.vetting_data
        columns = numeric_columns(data.table if data is not None else None)
        self.sort_combo.blockSignals(True)
        self.sort_combo.clear()
        for position, (key, name, tip) in enumerate(SORTS):
            self.sort_combo.addItem(name, key)
            self.sort_combo.setItemData(position, tip, Qt.ItemDataRole.ToolTipRole)
        if columns:
            self.sort_combo.insertSeparator(self.sort_combo.count())
            for name in columns:
                self.sort_combo.addItem(name, column_sort_key(name))
        self.sort_combo.blockSignals(False)

    def _set_slider_steps(self, tile_height):
        value = self.size_slider.value()
        self.size_slider.blockSignals(True)
        self.size_slider.setRange(tile_height, MAX_TILE_ZOOM * tile_height)
        self.size_slider.setSingleStep(tile_height)
        self.size_slider.setPageStep(tile_height)
        self.size_slider.setTickInterval(tile_height)
        self.size_slider.setValue(value)
        self.size_slider.blockSignals(False)

    def _follow_proxy(self):
        for widget in (self.sort_combo, self.descending_button, self.filter_combo):
            widget.blockSignals(True)
        position = self.sort_combo.findData(self.proxy.sort_key)
        self.sort_combo.setCurrentIndex(max(position, 0))
        relevant = self.proxy.sort_key not in FIXED_DIRECTION_SORTS
        self.descending_button.setEnabled(relevant)
        self.descending_button.setChecked(self.proxy.descending)
        self.descending_button.setText("▼ desc" if self.proxy.descending else "▲ asc")
        self.filter_combo.setCurrentText(self.proxy.filter_name)
        for widget in (self.sort_combo, self.descending_button, self.filter_combo):
            widget.blockSignals(False)
        if self.state.session.showing_injected:
            self.count_label.setText(f"{self.injected_proxy.rowCount()} injected")
            return
        data = self.model.vetting_data
        total = 0 if data is None else len(data)
        self.count_label.setText(f"{self.proxy.rowCount()} of {total} shown")

    def _on_injected_changed(self):
        """Offer the injected objects in the filter box while there are some; show their
        grid (and their summary instead of the keys) while they are chosen."""
        session = self.state.session
        position = self.filter_combo.findText(FILTER_INJECTED)
        self.filter_combo.blockSignals(True)
        if session.injected_available and position < 0:
            self.filter_combo.insertSeparator(self.filter_combo.count())
            self.filter_combo.addItem(FILTER_INJECTED)
            self.filter_combo.setItemData(
                self.filter_combo.count() - 1,
                "the objects injected by Model › Assess this frame, as they were scored "
                "(never labels)",
                Qt.ItemDataRole.ToolTipRole,
            )
        elif not session.injected_available and position >= 0:
            self.filter_combo.removeItem(position)
            self.filter_combo.removeItem(position - 1)  # its separator
        self.filter_combo.blockSignals(False)
        showing = session.showing_injected
        page = self.injected_view if showing else self.view
        switched = page is not self.pages.currentWidget()
        self.pages.setCurrentWidget(page)
        for widget in (self.sort_caption, self.sort_combo, self.descending_button):
            widget.setVisible(not showing)
        self.injected_order_label.setVisible(showing)
        self._show_injected_summary()
        self._follow_proxy()
        if switched:  # the keys go to the grid shown
            page.setFocus()

    def _show_injected_summary(self, *_):
        session = self.state.session
        showing = session.showing_injected
        self.keys_label.setVisible(not showing)
        self.injected_summary_label.setVisible(showing)
        self.injected_summary_label.setText(session.injected_summary() if showing else "")

    def _on_sort_chosen(self, position):
        self.proxy.set_sort(self.sort_combo.itemData(position))
        self._show_from_the_top()

    def _on_direction_toggled(self, descending):
        self.proxy.set_sort(self.proxy.sort_key, descending)
        self._show_from_the_top()

    def _show_from_the_top(self):
        """After the user re-sorts: the first tile selected, in view, the keys on the grid.

        Staying on the selected tile left the user looking at the wrong end of the new
        order, and the focus in the sort box turned the next key into another sort.
        """
        if self.proxy.rowCount():
            self.state.select(self.proxy.object_at(0))
        self.view.scrollToTop()
        self.view.setFocus()

    def _on_size_changed(self, value):
        step = self.size_slider.singleStep()
        snapped = min(max(round(value / step), 1), MAX_TILE_ZOOM) * step
        if snapped != value:
            self.size_slider.setValue(snapped)
            return
        self.view.set_tile_scale(snapped)
        self.injected_view.set_tile_scale(snapped)
