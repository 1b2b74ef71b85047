"""deepnotes.vision: receptive fields, standard CNN layouts and (later) detection pieces."""

from deepnotes.vision.receptive_field import LayerRF as LayerRF
from deepnotes.vision.receptive_field import effective_receptive_field as effective_receptive_field
from deepnotes.vision.receptive_field import measure_receptive_field as measure_receptive_field
from deepnotes.vision.receptive_field import module_rf_table as module_rf_table
from deepnotes.vision.receptive_field import receptive_field as receptive_field
from deepnotes.vision.receptive_field import (
    receptive_field_closed_form as receptive_field_closed_form,
)
from deepnotes.vision.receptive_field import receptive_field_topdown as receptive_field_topdown
from deepnotes.vision.receptive_field import rf_table as rf_table
