// AD8232 board -> ECG monitor, binary framed format (docs/protocol.md, "Binary format").
//
// One 12-byte frame per sample (one channel), little-endian:
//   A5 5A | n_channels (1) | flags (bit 0 = lead-off) | counter u32 | sample i16 | Fletcher-16
// The counter lets the monitor find lost frames (they become NaN, timing is kept); the checksum
// catches corrupted ones. Works on AVR (Uno, Nano) and ESP32; on an ESP32 use ADC pin 34 and
// --gain 1365 --baseline 2048.
// Read it with:
//   ecg-replay serial:/dev/ttyUSB0 --format binary --fs 1000 --baud 230400 --gain 341 --baseline 512

const unsigned long FS_HZ = 1000;                      // must equal --fs
const unsigned long PERIOD_US = 1000000UL / FS_HZ;
const int PIN_ECG = A0, PIN_LO_PLUS = 10, PIN_LO_MINUS = 11;
const uint8_t N_CHANNELS = 1;

unsigned long next_us;
uint32_t counter = 0;

void put16(uint8_t *p, int16_t v) { p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; }
void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF; }

void setup() {
  Serial.begin(230400);                                // 12 bytes x 1000 Hz needs >= 120000 baud
  pinMode(PIN_LO_PLUS, INPUT);
  pinMode(PIN_LO_MINUS, INPUT);
  next_us = micros();
}

void loop() {
  if ((long)(micros() - next_us) < 0) return;
  next_us += PERIOD_US;
  uint8_t f[8 + 2 * N_CHANNELS + 2];
  bool off = digitalRead(PIN_LO_PLUS) == HIGH || digitalRead(PIN_LO_MINUS) == HIGH;
  f[0] = 0xA5; f[1] = 0x5A;
  f[2] = N_CHANNELS;
  f[3] = off ? 0x01 : 0x00;
  put32(f + 4, counter++);
  put16(f + 8, (int16_t)analogRead(PIN_ECG));
  // Fletcher-16 over bytes 2 .. 7 + 2n
  uint16_t s1 = 0, s2 = 0;
  for (int i = 2; i < 8 + 2 * N_CHANNELS; i++) { s1 = (s1 + f[i]) % 255; s2 = (s2 + s1) % 255; }
  f[8 + 2 * N_CHANNELS] = s1;
  f[9 + 2 * N_CHANNELS] = s2;
  Serial.write(f, sizeof f);
}
