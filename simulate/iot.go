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
		}
	}
	return newGenerator(&iot{seed: opts.Seed, devices: devs}, opts, 0x1071)
}

type iot struct {
	seed    uint64
	devices []device
}

type device struct {
	sensor  *sensorModel
	value   float64
	battery float64
}

func (s *iot) fresh(r *rand.Rand, n uint64, ts int64, keyless bool) ([]byte, string) {
	k := r.IntN(len(s.devices))
	d := &s.devices[k]
	m := d.sensor
	d.value += r.NormFloat64()*m.step + 0.02*(m.base-d.value)
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
