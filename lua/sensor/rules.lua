-- The demo county's alert rules for the sensor plugin (plugins/sensor/README.md, "Alert
-- rules"). Each rule applies to every datastream of an observed property, or to one
-- stream; thresholds close below their `clear` value (hysteresis), so a reading that
-- hovers at the limit does not open and close an alert every minute.
return {
  -- 滑坡/边坡位移: the classic landslide warning is the displacement rate
  { name = "slope-rate-warning", property = "displacement", level = "warning",
    rate = { above = 2, clear = 1, window = 3600, per = 3600 } },   -- mm per hour
  { name = "slope-rate-critical", property = "displacement", level = "critical",
    rate = { above = 5, clear = 3, window = 3600, per = 3600 } },
  -- 雨量: an hour's rainfall (a gauge that reports the hour's total)
  { name = "heavy-rain", property = "rainfall", level = "warning",
    threshold = { above = 30, clear = 20 } },                       -- mm
  -- 水位: above the warning level of the river section
  { name = "water-level", property = "water level", level = "warning",
    threshold = { above = 5.0, clear = 4.5 } },                     -- m
  -- a station that stops reporting is itself an alert: the slope is unwatched
  { name = "station-silent", property = "displacement", level = "warning",
    offline = { intervals = 3 } },
}
