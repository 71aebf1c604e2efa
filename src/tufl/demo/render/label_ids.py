"""Cityscapes label ids of the classes the demo scenes draw."""

from __future__ import annotations

from tufl.data.labels import CITYSCAPES_19

_LABEL_ID = {name: label_id for name, label_id, _ in CITYSCAPES_19}
ROAD = _LABEL_ID["road"]
SIDEWALK = _LABEL_ID["sidewalk"]
BUILDING = _LABEL_ID["building"]
WALL = _LABEL_ID["wall"]
FENCE = _LABEL_ID["fence"]
POLE = _LABEL_ID["pole"]
TRAFFIC_LIGHT = _LABEL_ID["traffic light"]
TRAFFIC_SIGN = _LABEL_ID["traffic sign"]
VEGETATION = _LABEL_ID["vegetation"]
TERRAIN = _LABEL_ID["terrain"]
SKY = _LABEL_ID["sky"]
PERSON = _LABEL_ID["person"]
RIDER = _LABEL_ID["rider"]
CAR = _LABEL_ID["car"]
TRUCK = _LABEL_ID["truck"]
BUS = _LABEL_ID["bus"]
TRAIN = _LABEL_ID["train"]
MOTORCYCLE = _LABEL_ID["motorcycle"]
BICYCLE = _LABEL_ID["bicycle"]
EGO_VEHICLE = 1  # Cityscapes label id of the recording car's bonnet (not a train class)

SHADOW_RECEIVERS = (ROAD, SIDEWALK, TERRAIN)  # the ground surfaces cast shadows darken
