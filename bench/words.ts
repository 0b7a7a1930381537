// Word lists for the benchmark dataset: names, places and a product vocabulary, so text columns hold
// language-like content that compresses and dedupes like real data, not padding or random bytes.
// Kept as text and split once at load: one word per line would make this file ten times as long.

/** Split a list written as text: on commas when it has any (entries with spaces), else on whitespace. */
function list(text: string): string[] {
  return text.includes(',')
    ? text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    : text.trim().split(/\s+/);
}

/** One entry per line, for entries that hold commas. */
function lines(text: string): string[] {
  return text
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export const ADJECTIVES = list(`
  durable lightweight compact ergonomic premium classic modern rustic sleek sturdy portable adjustable
  waterproof rechargeable wireless handcrafted organic recycled stainless vintage minimalist heavy-duty
  foldable eco-friendly quiet powerful soft breathable non-stick insulated stackable modular reversible
  scratch-resistant slim
`);

export const CATEGORIES = list(`
  kitchen garden outdoor electronics office toys books sports beauty home automotive pets music tools
  grocery fashion
`);

export const COMMON_WORDS = list(`
  the and with for your this that is to of in it on a an as designed made perfect everyday use easy clean
  store fits most comes two year warranty gift ideal home travel office kids family quality great value
  works well after months arrived quickly packaging could be better would buy again color size smaller
  larger than expected battery lasts all day long customer service helpful returned replacement order
  delivery late on time box damaged instructions clear assembly took minutes recommend friends price fair
  material feels cheap solid comfortable noise level low high setting button handle lid strap pocket
  zipper surface finish edge corner weight grams
`);

export const CURRENCIES = list(`USD EUR GBP CAD JPY AUD CHF SEK BRL INR`);

export const EMAIL_DOMAINS = list(`
  gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me gmx.de web.de orange.fr libero.it
  example.com mail.ru qq.com fastmail.com aol.com zoho.com
`);

export const EVENT_TYPES = list(`
  page_view page_view page_view page_view search search add_to_cart remove_from_cart checkout_started
  checkout_completed login logout signup review_posted wishlist_add email_opened email_clicked
  support_ticket
`);

export const FIRST_NAMES = list(`
  James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan
  Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Margaret
  Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin
  Amanda Brian Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon Jeffrey
  Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda
  Larry Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine
  Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather
  José Zoë Søren Ægir François Łukasz Małgorzata Jürgen Anaïs Björn Hiroshi Yuki Wei Mei Arjun Priya
  Olusegun Chiamaka Mateo Valentina
`);

export const LAST_NAMES = list(`
  Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
  Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez
  Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker
  Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards
  Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey
  Reed Kelly Howard Ramos Kim Cox Ward Richardson Müller Schröder Nowak Kowalski Dubois Lefèvre Rossi
  Bianchi Jensen Hansen Tanaka Suzuki Wang Zhang Patel Singh Okafor Adeyemi Silva Santos
`);

export const MATERIALS = list(`
  oak, walnut, bamboo, steel, aluminium, cotton, linen, wool, leather, ceramic, glass, silicone, nylon,
  polyester, cast iron, copper, granite, cork, rattan, hemp,
`);

export const NOUNS = list(`
  kettle, backpack, lamp, chair, desk, blender, speaker, headphones, jacket, tent, mug, notebook, pen,
  charger, cable, keyboard, mouse, monitor, pillow, blanket, skillet, knife, cutting board, water bottle,
  yoga mat, dumbbell, bicycle light, drill, hammer, planter, watering can, garden hose, dog bed, cat tree,
  puzzle, board game, novel, cookbook, sneakers, wallet, sunglasses, watch, umbrella, thermos, toaster,
  rug, curtain, shelf, basket,
`);

export const ORDER_STATUSES = list(`pending paid packed shipped delivered cancelled refunded`);

export const PAGES = list(`
  / /search /cart /checkout /account /account/orders /account/settings /help /category/kitchen
  /category/garden /category/outdoor /category/electronics /category/office /category/toys /category/books
  /category/sports /deals /new /blog /stores
`);

export const REFERRERS = list(`
  direct google google google bing duckduckgo facebook instagram newsletter affiliate reddit youtube
  tiktok partner-site
`);

export const STREETS = list(`
  Main Oak Pine Maple Cedar Elm Washington Lake Hill Park View Sunset Railroad Church Willow Mill River
  Highland Forest Spring Ridge Meadow Jefferson Lincoln Madison Franklin Chestnut Walnut Center Broad
  Market High
`);

export const STREET_SUFFIXES = list(`St Ave Rd Blvd Ln Dr Ct Way Pl Ter`);

export const USER_AGENTS = lines(`
  Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36
  Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15
  Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148
  Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0
  Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36
  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0
  Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148
  Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36
`);

/** City and ISO country code, "City:CC". */
export const CITIES: readonly (readonly [city: string, country: string])[] = list(`
  New York:US, Los Angeles:US, Chicago:US, Houston:US, Phoenix:US, Philadelphia:US, San Antonio:US,
  San Diego:US, Dallas:US, Austin:US, Toronto:CA, Montréal:CA, Vancouver:CA, London:GB, Manchester:GB,
  Berlin:DE, München:DE, Hamburg:DE, Köln:DE, Paris:FR, Lyon:FR, Marseille:FR, Madrid:ES, Barcelona:ES,
  Sevilla:ES, Roma:IT, Milano:IT, Amsterdam:NL, Rotterdam:NL, Bruxelles:BE, Wien:AT, Zürich:CH, Kraków:PL,
  Warszawa:PL, Praha:CZ, Stockholm:SE, Göteborg:SE, Oslo:NO, København:DK, Helsinki:FI, Lisboa:PT,
  Porto:PT, Dublin:IE, 東京:JP, 大阪:JP, Seoul:KR, São Paulo:BR, Rio de Janeiro:BR, Ciudad de México:MX,
  Buenos Aires:AR, Sydney:AU, Melbourne:AU, Auckland:NZ, Mumbai:IN, Bengaluru:IN, Lagos:NG, Nairobi:KE,
  Cape Town:ZA,
`).map((entry) => {
  const [city, country] = entry.split(':');
  return [city!, country!] as const;
});
