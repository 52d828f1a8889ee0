// AD8232 heart-monitor board -> ECG monitor, ASCII format (docs/protocol.md, "Serial sensors").
//
// Wiring (SparkFun AD8232 breakout): OUTPUT -> A0, LO+ -> 10, LO- -> 11, 3.3V, GND.
// One line per sample: the ADC value, or "!" while an electrode is off.
// Read it with:
//   ecg-replay serial:/dev/ttyUSB0 --fs 250 --baud 115200 --gain 341 --baseline 512
// (10-bit ADC at 3.3 V: AD8232 gain 1100 -> 1100 * 1023 / 3300 = 341 ADC/mV, 0 mV at mid-scale.
//  A 5 V Arduino Uno: --gain 225 --baseline 338. An ESP32, 12 bits: --gain 1365 --baseline 2048.)

const unsigned long FS_HZ = 250;                       // must equal --fs
const unsigned long PERIOD_US = 1000000UL / FS_HZ;
const int PIN_ECG = A0, PIN_LO_PLUS = 10, PIN_LO_MINUS = 11;

unsigned long next_us;

void setup() {
  Serial.begin(115200);                                // must equal --baud
  pinMode(PIN_LO_PLUS, INPUT);
  pinMode(PIN_LO_MINUS, INPUT);
  next_us = micros();
}

void loop() {
  // pace by the clock, not by delay(): the monitor takes its timing from FS_HZ
  if ((long)(micros() - next_us) < 0) return;
  next_us += PERIOD_US;
  if (digitalRead(PIN_LO_PLUS) == HIGH || digitalRead(PIN_LO_MINUS) == HIGH) {
    Serial.println('!');                               // lead-off: a sample with no value
  } else {
    Serial.println(analogRead(PIN_ECG));
  }
}
