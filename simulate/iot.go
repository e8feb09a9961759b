package simulate

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// IoT sensor kinds.
const (
	SensorTemperature = "temperature"
	SensorHumidity    = "humidity"
	SensorPressure    = "pressure"
)

// sensorModel describes how one kind of sensor reads.
type sensorModel struct {
	name     string
	unit     string
	base     float64 // typical reading
	spread   float64 // devices start within base ± spread
	step     float64 // standard deviation of one step of the walk
	min, max float64 // physical range of the sensor
}

var sensors = []sensorModel{
	{SensorTemperature, "celsius", 21, 4, 0.1, -40, 85},
	{SensorHumidity, "percent", 45, 15, 0.5, 0, 100},
	{SensorPressure, "hPa", 1013, 8, 0.3, 870, 1085},
}

// NewIoT returns a generator of sensor readings:
//
//	{"reading_id":"r-1-0","device_id":"dev-7","sensor":"temperature",
//	 "value":21.37,"unit":"celsius","ts":1700000000000,"battery":87}
//
// reading_id is unique ("r-<seed>-<n>") except in duplicates; device_id
// ("dev-<k>", k < Keys) is the key. Each device has one sensor (temperature
// in celsius, humidity in percent or pressure in hPa) whose value follows a
// random walk that drifts back towards a typical reading and stays within
// the sensor's range. battery is a whole percentage, 0 to 100, that drains
// slowly and jumps back to 100 when the battery is replaced. ts is unix
// milliseconds.
//
// With Options.Drift, each device's readings also wander: the value its
// walk drifts back towards moves away from the typical reading by Drift
// steps of its sensor's walk per reading (temperature 0.1 celsius,
// humidity 0.5 percent, pressure 0.3 hPa; each device at between half and
// one and a half times that, up or down as its draw says), and turns back
// when it reaches driftSpan times the sensor's spread from the typical
// reading or the sensor's range. Consecutive readings stay close.
//
// With the analytics options (on by default): a temperature device now
// and then heats up (Options.Heat: its readings rise by HeatRise, hold,
// and fall back, by the readings' ts), a device goes quiet for a while
// (Options.Outages), and some readings come out of order or late
// (Options.Disorder, Options.Late).
func NewIoT(opts Options) Generator {
	opts = opts.withDefaults()
	r := rand.New(rand.NewPCG(opts.Seed, 0x107d))
	devs := make([]device, opts.Keys)
	for k := range devs {
		m := &sensors[k%len(sensors)]
		devs[k] = device{
			sensor:  m,
			value:   m.base + (2*r.Float64()-1)*m.spread,
			battery: 50 + 50*r.Float64(),
			centre:  m.base,
		}
	}
	if opts.Drift > 0 {
		// A stream of its own, so that the readings' draws are those of
		// the same seed without drift.
		dr := rand.New(rand.NewPCG(opts.Seed, 0xd71f))
		for k := range devs {
			d := &devs[k]
			d.trend = opts.Drift * d.sensor.step * (0.5 + dr.Float64())
			if dr.IntN(2) == 0 {
				d.trend = -d.trend
			}
		}
	}
	s := &iot{seed: opts.Seed, devices: devs, opts: opts, heat: rand.New(rand.NewPCG(opts.Seed, 0x4ea7))}
	return newGenerator(s, opts, 0x1071)
}

// driftSpan bounds a drifting device's centre: within driftSpan times its
// sensor's spread of the typical reading (and within the sensor's range).
const driftSpan = 10

// driftBounds are the lowest and highest centre of a drifting device.
func (m *sensorModel) driftBounds() (lo, hi float64) {
	return math.Max(m.min, m.base-driftSpan*m.spread), math.Min(m.max, m.base+driftSpan*m.spread)
}

type iot struct {
	seed    uint64
	devices []device
	opts    Options
	heat    *rand.Rand // draws of heat episodes
}

type device struct {
	sensor  *sensorModel
	value   float64
	battery float64
	// centre is what the value drifts back towards: the sensor's typical
	// reading, moved by trend at every reading (0 without Options.Drift).
	centre, trend float64
	// A heat episode (Options.Heat), unix ms: it starts at heatFrom,
	// rises until heatFrom + ramp, holds until heatHold, falls until
	// heatHold + ramp. heatFrom 0: none.
	heatFrom, heatHold int64
}

// heatOffset is what the heat episode adds to a temperature read at ts,
// from 0 up to rise; done once the episode is over.
func (d *device) heatOffset(ts, ramp int64, rise float64) (off float64, done bool) {
	switch {
	case ts <= d.heatFrom:
		return 0, false
	case ts < d.heatFrom+ramp:
		return rise * float64(ts-d.heatFrom) / float64(ramp), false
	case ts <= d.heatHold:
		return rise, false
	case ts < d.heatHold+ramp:
		return rise * float64(d.heatHold+ramp-ts) / float64(ramp), false
	}
	return 0, true
}

// heated returns the reading v of device d at ts, with its heat episode if
// it has one, and may start one.
func (s *iot) heated(d *device, v float64, ts int64) float64 {
	if s.opts.Heat <= 0 || d.sensor.name != SensorTemperature {
		return v
	}
	ramp := max(1, (s.opts.HeatFor / 5).Milliseconds())
	if d.heatFrom != 0 {
		off, done := d.heatOffset(ts, ramp, s.opts.HeatRise)
		if !done {
			return math.Min(d.sensor.max, v+off)
		}
		d.heatFrom, d.heatHold = 0, 0
	}
	if s.heat.Float64() < s.opts.Heat {
		hold := s.opts.HeatFor + time.Duration(s.heat.Float64()*float64(s.opts.HeatFor))
		d.heatFrom = ts
		d.heatHold = ts + ramp + hold.Milliseconds()
	}
	return v
}

// away implements source: an outage after a reading.
func (s *iot) away(r *rand.Rand, _ int) time.Duration {
	if s.opts.Outages <= 0 || r.Float64() >= s.opts.Outages {
		return 0
	}
	return s.opts.Outage + time.Duration(r.Float64()*float64(s.opts.Outage))
}

func (s *iot) keys() int { return len(s.devices) }

func (s *iot) fresh(r *rand.Rand, n uint64, k int, ts int64, keyless bool) ([]byte, string) {
	d := &s.devices[k]
	m := d.sensor
	if d.trend != 0 {
		d.centre += d.trend
		if lo, hi := m.driftBounds(); d.centre < lo || d.centre > hi {
			d.centre = math.Max(lo, math.Min(hi, d.centre))
			d.trend = -d.trend
		}
	}
	d.value += r.NormFloat64()*m.step + 0.02*(d.centre-d.value)
	d.value = math.Max(m.min, math.Min(m.max, d.value))
	d.battery -= 0.02 * r.Float64()
	if d.battery <= 0 {
		d.battery = 100
	}

	key := "dev-" + strconv.Itoa(k)
	b := make([]byte, 0, 160)
	b = append(b, '{')
	b = appendStringField(b, "reading_id", id("r", s.seed, n))
	if !keyless {
		b = appendStringField(b, "device_id", key)
	}
	b = appendStringField(b, "sensor", m.name)
	b = appendFixedField(b, "value", s.heated(d, d.value, ts))
	b = appendStringField(b, "unit", m.unit)
	b = appendIntField(b, "ts", ts)
	b = appendIntField(b, "battery", int64(math.Ceil(d.battery)))
	b = append(b, '}')
	if keyless {
		key = ""
	}
	return b, key
}
