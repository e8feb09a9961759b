package simulate

import (
	"math"
	"math/rand/v2"
	"strconv"
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
	return newGenerator(&iot{seed: opts.Seed, devices: devs}, opts, 0x1071)
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
}

type device struct {
	sensor  *sensorModel
	value   float64
	battery float64
	// centre is what the value drifts back towards: the sensor's typical
	// reading, moved by trend at every reading (0 without Options.Drift).
	centre, trend float64
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
	b = appendFixedField(b, "value", d.value)
	b = appendStringField(b, "unit", m.unit)
	b = appendIntField(b, "ts", ts)
	b = appendIntField(b, "battery", int64(math.Ceil(d.battery)))
	b = append(b, '}')
	if keyless {
		key = ""
	}
	return b, key
}
